//! Rooms over REST: list, create, private rooms, invitations and history pages.

use crate::helpers::*;
