//! The pthread synchronisation objects (being built).
