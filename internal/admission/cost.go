package admission

// The memory one ProcessGraph request holds while it is served, as the gRPC
// handler reserves it (see ReadBound and RequestCost).
const (
	// featureBytes, edgeBytes: float32 features, two int64 indexes per edge.
	featureBytes = 4
	edgeBytes    = 16
	// nodeIndexBytes is the decoder's id index and ids per node (string
	// header into the request buffer plus index slots).
	nodeIndexBytes = 32
	// nodeOutputBytes is per node and class: the probabilities ONNX Runtime
	// returns, the hidden activations it keeps (16 wide in the bundled
	// models), plus scores and class index.
	nodeOutputBytes = 4
	nodeHiddenBytes = 2 * 16 * 4
	// resultNodeBytes bounds one node_scores entry of the response besides
	// its id: tags, lengths and the float.
	resultNodeBytes = 16
)

// ReadBound bounds the memory a request whose message is wireBytes long
// can take once decoded, before it is decoded: the message buffer, tensors
// no bigger than twice the wire bytes (4 bytes per 4-byte packed float; 16
// bytes per edge, which takes at least 8 on the wire) and, with ids taking
// at least one byte, index and response entries per node bounded by the
// wire bytes again. The handler resizes its reservation to this once the
// message length is known, before decoding.
func ReadBound(wireBytes int) int64 {
	return 4 * int64(wireBytes)
}

// RequestCost is the memory a decoded request holds until its response is
// sent: the message buffer, the feature and edge tensors, the id index, the
// model's outputs and the response bytes. responseBytes is the encoded
// response size when known (0: estimated from nodes and the wire bytes).
func RequestCost(wireBytes, nodes, edges, features, classes, responseBytes int) int64 {
	n, e := int64(nodes), int64(edges)
	cost := int64(wireBytes) +
		n*int64(features)*featureBytes + e*edgeBytes +
		n*nodeIndexBytes +
		n*(int64(classes)*nodeOutputBytes+nodeHiddenBytes+8)
	if responseBytes > 0 {
		cost += int64(responseBytes)
	} else {
		cost += n * resultNodeBytes
	}
	return cost
}
