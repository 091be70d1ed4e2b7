// Package faults is the contract every fault injector honours, built-in or
// third-party: it describes itself with a parameter schema, validates
// parameters, injects a fault and returns a [Handle], and removes the fault
// through that handle.
//
// The contract is plain data in and out, with a context on every call, so
// that it maps one-to-one onto the gRPC service of the plugin boundary: a
// [Request] and a [Handle] carry only strings, numbers and times, never
// pointers into the caller's memory. Every injected fault carries a
// time-to-live ([Request.TTL]): whatever happens to the process that
// injected it, the fault is gone at most that long after its injection.
//
// A [Registry] is a value handed down from the command line, not global
// state.
package faults
