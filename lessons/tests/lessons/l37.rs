//! Práctica 37 (en preparación)
