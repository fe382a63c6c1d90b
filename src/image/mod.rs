//! The in-memory metadata image.
