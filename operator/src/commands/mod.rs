//! The subcommands of `trellis`, one module each.
