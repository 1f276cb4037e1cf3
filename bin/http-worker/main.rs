//! http-worker
fn main() {}
