//! twill-configtx (placeholder until written).
