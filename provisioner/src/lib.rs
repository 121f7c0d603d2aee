//! kxca provisioning: application forms and the office register (intake),
//! later mail intake and delivery workflows.
#![forbid(unsafe_code)]

pub mod intake;
