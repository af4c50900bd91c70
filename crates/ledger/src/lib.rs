//! twill-ledger (being written).
