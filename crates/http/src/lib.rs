//! HTTP calls for callpool workers (to be written).
