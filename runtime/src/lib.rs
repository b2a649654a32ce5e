//! `admd`, the ADM runtime. Empty shell: the proxy arrives with the runtime issue (#5).
