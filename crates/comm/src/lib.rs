//! twill-comm (being written).
