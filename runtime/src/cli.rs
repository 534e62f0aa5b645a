//! Command lines whose help is narrowed once clap has built them (the audit and admin tools
//! take their store flags before or after the subcommand, and each subcommand's help shows only
//! the flags it uses): parsing, usage errors and shell completions of such a command line,
//! written once.

use std::ffi::OsString;

use clap::{Command, FromArgMatches};
use clap_complete::Shell;

/// A command line shown through [`ShownCli::shown`] rather than clap's derived command.
pub trait ShownCli: FromArgMatches + Sized {
    /// The program's name, as shells call it.
    const NAME: &'static str;

    /// The command as parsed and shown: built, with each subcommand's help narrowed.
    fn shown() -> Command;

    /// Parses this process's arguments; prints the help, the version or a usage error and
    /// exits (status 2) when that is the answer.
    fn parse_shown() -> Self {
        let mut command = Self::shown();
        let matches = command.get_matches_mut();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
    }

    /// Parses `args` (the first is the program's name) as [`ShownCli::parse_shown`] does,
    /// returning the error.
    fn try_parse_shown_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Self::shown();
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }

    /// The completion script for `shell`.
    fn completions(shell: Shell) -> Vec<u8> {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Self::shown(), Self::NAME, &mut script);
        script
    }
}
