#pragma once
/// Durable file writes: every file a run leaves on disk (checkpoints, history.csv,
/// metrics.json, the suite's results and reports, images) is written through these, so a
/// kill or a power cut leaves either the old file or the whole new one, and a failed write (a
/// full disk, a quota, an I/O error) is an Error naming the file, never a silent truncation.
#include <initializer_list>
#include <string>
#include <string_view>

namespace dagger {

/// Writes every byte of `bytes` to the open file `fd`, resuming after partial writes and
/// interruptions. Returns 0, or the errno of the write that failed.
int write_all(int fd, std::string_view bytes);

/// Writes `parts`, one after the other, to the file `path` (created or truncated) and fsyncs
/// it: when this returns, the bytes are on disk. Not atomic by itself: it is for files inside
/// a folder that is renamed into place as a whole (a checkpoint's staging folder). On failure
/// the partial file is removed and Error is thrown naming `path` and the system's reason.
void write_file_synced(const std::string& path, std::initializer_list<std::string_view> parts);

/// Replaces `path` by `parts` atomically and durably: writes temporary_path(path), fsyncs it,
/// renames it over `path` and fsyncs the folder. A reader, or a rerun after a kill, finds the
/// old file or the whole new one. Temporary files that killed writers left for `path` are
/// removed first. On failure `path` is left as it was, the temporary file is removed and Error
/// is thrown naming `path` and the system's reason.
void write_file_atomically(const std::string& path, std::initializer_list<std::string_view> parts);
inline void write_file_atomically(const std::string& path, std::string_view text) {
  write_file_atomically(path, {text});
}

/// The temporary name this process writes `path` under, `path`.tmp-<pid>: for a file that
/// another program produces (gnuplot's plots), which commit_file then puts in place.
std::string temporary_path(const std::string& path);

/// Puts a file written at temporary_path(path) in place as write_file_atomically does: fsync,
/// rename over `path`, fsync of the folder. On failure the temporary file is removed and Error
/// is thrown.
void commit_file(const std::string& path);

/// fsyncs the folder `dir`, so the files created, renamed or removed in it stay so after a
/// crash. Throws Error naming the folder when it cannot.
void sync_folder(const std::string& dir);

}  // namespace dagger
