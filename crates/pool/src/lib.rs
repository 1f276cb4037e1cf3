//! The supervisor engine (to be written).
