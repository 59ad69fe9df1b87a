//! Who may do what. Today: the defences against a hostile web page in the operator's browser
//! ([`browser`]), which hold even on loopback. Tokens and roles come next, here.

pub mod browser;
