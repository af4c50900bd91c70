//! twill-policy (placeholder until written).
