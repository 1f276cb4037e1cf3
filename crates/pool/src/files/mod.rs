//! The results folder: one result file per job and the joblog, written
//! so that the folder never holds half a result and never follows a link
//! planted in it.

pub mod output;
pub mod safedir;
