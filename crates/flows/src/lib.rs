//! Workflows as Step Functions has them: the Amazon States Language. This
//! crate holds the language itself, pure and without I/O — paths into
//! JSON (`path`), payload templates and intrinsic functions (`payload`,
//! `intrinsics`), Choice rules (`choice`), errors and their Retry and Catch
//! matching (`errors`) and the definition with its checks (`asl`) — so
//! the execution engine above it is a loop of plain steps.

pub mod asl;
pub mod choice;
pub mod errors;
pub mod intrinsics;
pub mod path;
pub mod payload;
