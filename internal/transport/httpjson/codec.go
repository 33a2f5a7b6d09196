package httpjson

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gcnserve/gcnserve/gcn"
	gcnpb "github.com/gcnserve/gcnserve/gen"
)

// unmarshalGraph parses a POST /v1/process-graph body: the protojson of
// GraphData, exactly the shape of examples/karate.json (field names in
// lowerCamelCase or as in the .proto; unknown fields are an error, so a
// misspelt "includePredictions" does not pass silently).
func unmarshalGraph(body []byte) (*gcnpb.GraphData, error) {
	m := new(gcnpb.GraphData)
	if err := protojson.Unmarshal(body, m); err != nil {
		return nil, gcn.Errorf(gcn.KindInvalidArgument, "request body is not a JSON GraphData: %s", protoMessage(err))
	}
	return m, nil
}

// protoMessage is err's text without protobuf-go's "proto:" prefix (which
// it spells with a random space or no-break space to stop callers from
// matching on it).
func protoMessage(err error) string {
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "proto:"); ok {
		s = strings.TrimLeft(rest, " \u00a0")
	}
	return s
}

// result builds the GCNResult for a prediction over ids (request order).
// classNames name the classes; an index they do not cover is named by its
// decimal index, as the gRPC encoder does.
func result(ids []string, p gcn.Prediction, includePredictions bool, classNames []string, model, version string) *gcnpb.GCNResult {
	res := &gcnpb.GCNResult{
		NodeScores:   make(map[string]float32, len(ids)),
		ModelName:    model,
		ModelVersion: version,
	}
	for i, id := range ids {
		res.NodeScores[id] = p.Scores[i]
	}
	if !includePredictions {
		return res
	}
	res.Predictions = make([]*gcnpb.NodePrediction, len(ids))
	c := p.NumClasses
	for i, id := range ids {
		class := p.ClassIndex[i]
		name := strconv.Itoa(int(class))
		if class >= 0 && int(class) < len(classNames) {
			name = classNames[class]
		}
		res.Predictions[i] = &gcnpb.NodePrediction{
			Id:            id,
			ClassIndex:    class,
			ClassName:     name,
			Probabilities: p.Probabilities[i*c : (i+1)*c : (i+1)*c],
		}
	}
	return res
}

// marshalResult writes res as protojson with every field present, zero
// values included: a node of class 0 must show "classIndex": 0, not leave
// the reader guessing.
func marshalResult(res *gcnpb.GCNResult) ([]byte, error) {
	return marshalOptions.Marshal(res)
}

// marshalOptions encode every response message: zero values included.
var marshalOptions = protojson.MarshalOptions{EmitUnpopulated: true}
