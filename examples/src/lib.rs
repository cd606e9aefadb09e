//! Examples live next to this file; run one with `cargo run -p troupe-examples --example NAME`.
