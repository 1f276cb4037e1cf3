//! supervisor
fn main() {}
