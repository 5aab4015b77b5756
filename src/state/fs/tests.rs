//! Tests of the file system state machine.
