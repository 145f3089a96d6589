//! Browser bindings: thin RAII wrappers that run the cores' effects.
