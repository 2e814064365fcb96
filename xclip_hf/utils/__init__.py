"""Small helpers every layer may use (they import nothing else from `xclip_hf`): `messages.one_line` (an error as
one readable line) and `lazy.lazy_exports` (a package's names imported on first use)."""
