//! One JSON-RPC line, as the stdio client and the `/mcp` endpoint parse it: no input panics or
//! overflows the stack, errors carry a JSON-RPC code, and accepted messages round-trip.

#![no_main]

#[path = "../common/jsonrpc.rs"]
mod jsonrpc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    jsonrpc::check_line(data);
});
