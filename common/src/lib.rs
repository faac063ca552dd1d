//! Pieces shared by hull-init and hull-agent. No dependencies: init links it too and
//! must stay tiny.

pub mod cmdline;
