//! Delivery rules: idempotency, recovery with since, limits, slow consumers, pings, shutdown.

use crate::helpers::*;
