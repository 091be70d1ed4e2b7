// Package proto is the wire contract between mailchaos and its fault
// plugins: the gRPC service and messages generated from fault.proto.
// Plugin authors do not use it directly; plugins/sdk speaks it for them.
// Regenerate it with `make proto`.
package proto
