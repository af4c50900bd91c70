//! twill-crypto (placeholder until written).
