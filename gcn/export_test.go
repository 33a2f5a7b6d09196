package gcn

// Softmax exposes softmax to the external test package.
var Softmax = softmax
