package gcn

// Softmax exposes softmax to the external test package.
var Softmax = softmax

// ReportCPU exposes reportCPU to the external benchmarks.
var ReportCPU = reportCPU
