//! (en preparación) From check outcomes to rubric points and levels.
