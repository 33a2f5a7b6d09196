package infer

// Softmax exposes softmax to the external test package.
var Softmax = softmax
