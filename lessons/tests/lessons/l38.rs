//! Práctica 38 (en preparación)
