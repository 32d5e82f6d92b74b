//! Facts about this machine: its addresses, host name and architecture.
