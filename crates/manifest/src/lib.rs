//! wharf.yaml: parse, overlay, interpolate, decode and validate a manifest into a typed stack.
