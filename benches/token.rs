//! Token benchmarks.
fn main() {}
