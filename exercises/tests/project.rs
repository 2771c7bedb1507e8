//! (en preparación) The network checks of exercise 6 against the reference `chat` server.
fn main() {}
