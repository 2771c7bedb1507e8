//! (en preparación)

use super::registry::Check;

pub fn checks() -> Vec<Check> {
    Vec::new()
}
