//! Práctica 36 (en preparación)
