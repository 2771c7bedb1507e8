//! Práctica 35 (en preparación)
