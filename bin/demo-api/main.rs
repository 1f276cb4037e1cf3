//! demo-api
fn main() {}
