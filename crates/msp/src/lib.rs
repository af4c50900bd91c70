//! twill-msp (placeholder until written).
