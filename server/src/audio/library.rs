//! The music library: a folder of audio files, what is in them, and what `play music <query>`
//! means.
//!
//! [`scan`] walks the folder (recursively; hidden files and folders skipped; symbolic links
//! followed, but never round a loop) and [`probe`]s every file with an audio extension: its tags
//! and its duration come from the container's headers through symphonia, without decoding the
//! file. A file that cannot be played is listed in [`Scan::skipped`] with the reason; one bad file
//! never spoils a scan. [`find`] turns a query into a track ([`NoMatch`] when nothing fits,
//! where the original played the first track instead). [`install`] copies files in. (The demo
//! library a fresh droid plays, [`DEMO_ARTIST`]'s synthesized tunes, is written by `audio::demo`,
//! which builds on this module.)
//!
//! # Durations
//! Every duration comes from headers, never from decoding to the end:
//! - WAV: the `data` chunk's length over the block size (exact; a truncated file still reports
//!   what its header promised).
//! - FLAC: the STREAMINFO total sample count (exact).
//! - Ogg Vorbis: the granule position of the last page, which symphonia reads by seeking to the
//!   end (exact to the sample).
//! - MP4/M4A (AAC): the track's duration in the `mdhd` box. Symphonia ignores the edit list, so
//!   this includes the encoder's priming (1024 frames, 23 ms at 44.1 kHz), which its decoder
//!   also plays: the duration matches what is heard.
//! - MP3: the frame count of the Xing/Info or VBRI header, less the LAME encoder delay and
//!   padding (exact to the sample). An MP3 without such a header (some old encoders, streams cut
//!   from the radio) has its length *estimated* from the average size of its first few frames:
//!   right for constant bit rate files, possibly far off for variable bit rate ones.
//!
//! If the headers hold no duration at all, [`Track::duration`] is `None` and the file is still
//! playable.

use std::{
    collections::HashSet,
    fmt,
    fs::{self, File},
    io::{self, BufReader, Read},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde::{Serialize, Serializer};
use symphonia::core::{
    codecs::{
        CodecParameters,
        audio::{AudioCodecId, AudioDecoderOptions},
    },
    errors::Error as SymphoniaError,
    formats::{FormatOptions, FormatReader, TrackType, probe::Hint, well_known},
    io::MediaSourceStream,
    meta::{MetadataOptions, MetadataRevision, StandardTag},
    units::{Time, TimeBase},
};

/// The file name extensions (lower case) of the audio files the library takes.
pub const AUDIO_EXTENSIONS: [&str; 8] = ["mp3", "flac", "ogg", "oga", "wav", "m4a", "aac", "mp4"];

/// The artist of the embedded demo tracks, as it appears in their file names.
pub const DEMO_ARTIST: &str = "Cantina Demo";

/// A playable file in the library.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Track {
    /// Where the file is; what the player opens.
    pub path: PathBuf,
    /// The title tag, else the file name's part after "Artist - ", else the file name.
    pub title: String,
    /// The artist tag (or the album artist's), else the file name's part before " - ".
    pub artist: Option<String>,
    /// The album tag, for matching queries and showing in lists.
    pub album: Option<String>,
    /// The genre tag, for the dashboard and for DJ mode to pick by mood.
    pub genre: Option<String>,
    /// How long the track plays, from the file's headers (see the module's notes); `None` when
    /// they do not say. Serialized as seconds.
    #[serde(serialize_with = "seconds")]
    pub duration: Option<Duration>,
    /// The container as found in the file, whatever the extension claims: "mp3", "flac", "ogg",
    /// "wav", "m4a" (any MPEG-4), "aac" (raw ADTS), "mkv", "mp1" or "mp2".
    pub format: &'static str,
}

impl Track {
    /// How a person names the track: "Artist - Title", or just "Title" without an artist.
    pub fn display_name(&self) -> String {
        match &self.artist {
            Some(artist) => format!("{artist} - {}", self.title),
            None => self.title.clone(),
        }
    }

    /// The file name without its extension, which people also use to name a track.
    fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Writes a duration as fractional seconds, what a JSON reader wants.
fn seconds<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    duration.map(|d| d.as_secs_f64()).serialize(serializer)
}

/// A file that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file (or folder) left out.
    pub path: PathBuf,
    /// What is wrong with it, in words a person can act on.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// What a scan found.
#[derive(Clone, Debug)]
pub struct Scan {
    /// The playable tracks, sorted by artist, then title, then path (case-insensitive), so the
    /// 1-based numbers of `list music` stay the same from one scan to the next.
    pub tracks: Vec<Track>,
    /// Audio files (and folders) that could not be used, with the reason.
    pub skipped: Vec<Skipped>,
    /// How long the scan took, for the log.
    pub elapsed: Duration,
}

/// Scans `dir` recursively for audio files (see the module's notes).
///
/// Fails only if `dir` itself cannot be read; anything wrong further down lands in
/// [`Scan::skipped`].
pub fn scan(dir: &Path) -> io::Result<Scan> {
    let started = Instant::now();
    let walked = walk(dir, None)?;
    let audio: Vec<PathBuf> = walked
        .files
        .into_iter()
        .filter(|path| is_audio_file(path))
        .collect();
    let mut tracks = Vec::with_capacity(audio.len());
    let mut skipped = walked.problems;
    for (path, probed) in audio.iter().zip(probe_all(&audio)) {
        match probed {
            Ok(track) => tracks.push(track),
            Err(reason) => skipped.push(Skipped {
                path: path.clone(),
                reason,
            }),
        }
    }
    sort_tracks(&mut tracks);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let elapsed = started.elapsed();
    tracing::debug!(
        dir = %dir.display(),
        tracks = tracks.len(),
        skipped = skipped.len(),
        ?elapsed,
        "music library scanned"
    );
    Ok(Scan {
        tracks,
        skipped,
        elapsed,
    })
}

/// Sorts tracks the way [`Scan::tracks`] promises.
fn sort_tracks(tracks: &mut [Track]) {
    tracks.sort_by_cached_key(|track| {
        (
            track.artist.as_deref().unwrap_or("").to_lowercase(),
            track.title.to_lowercase(),
            track.path.clone(),
        )
    });
}

/// Whether `path` has one of the [`AUDIO_EXTENSIONS`] (in any case).
pub fn is_audio_file(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| {
            AUDIO_EXTENSIONS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(ext))
        })
}

/// Reads one file's tags and duration from its headers, and checks that its first audio frame
/// decodes. The error says what is wrong with the file ("it is corrupt (…)", "its codec … cannot
/// be played", …).
pub fn probe(path: &Path) -> Result<Track, String> {
    // Symphonia is meant not to panic on bad input, but a scan of a person's files must not die
    // if it does: such a file is skipped like any other bad one.
    panic::catch_unwind(AssertUnwindSafe(|| probe_file(path))).unwrap_or_else(|_| {
        Err("reading it crashed the audio decoder; the file is probably corrupt".to_owned())
    })
}

fn probe_file(path: &Path) -> Result<Track, String> {
    let file = File::open(path).map_err(|err| format!("cannot open it: {err}"))?;
    let len = file
        .metadata()
        .map_err(|err| format!("cannot read it: {err}"))?
        .len();
    if len == 0 {
        return Err("the file is empty".to_owned());
    }
    let source = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|ext| ext.to_str()) {
        hint.with_extension(ext);
    }
    let mut reader = symphonia::default::get_probe()
        .probe(
            &hint,
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|err| describe(&err))?;
    let track = reader
        .default_track(TrackType::Audio)
        .cloned()
        .ok_or("it holds no audio track")?;
    let Some(CodecParameters::Audio(params)) = &track.codec_params else {
        return Err("it holds no audio track".to_owned());
    };
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|_| {
            format!(
                "its audio is in {}, which the droid cannot decode",
                codec_name(params.codec)
            )
        })?;

    // Headers can look right in a file that is garbage after them (or garbage can look like an
    // MP3 frame header), so decode the first few packets: a moment's work, and it proves the
    // file plays. The first may legitimately fail (an MP3 frame leaning on a bit reservoir that
    // is not there), so one success in the first few is enough.
    let mut last_error = None;
    let mut decoded = false;
    for _ in 0..8 {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(err) => {
                last_error = Some(err);
                break;
            }
        };
        if packet.track_id != track.id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(_) => {
                decoded = true;
                break;
            }
            Err(err) => last_error = Some(err),
        }
    }
    if !decoded {
        return Err(match last_error {
            Some(err) => describe(&err),
            None => "it holds no audio".to_owned(),
        });
    }

    let duration = duration_of(&track, params.sample_rate, reader.as_ref());
    let format = format_name(reader.as_ref());
    let mut tags = read_tags(reader.as_mut(), track.id);
    if format == "wav" && tags.is_empty() {
        // Symphonia 0.6.1's WAV reader parses the RIFF INFO chunk and then drops it.
        tags = riff_info(path).unwrap_or_default();
    }
    let named = NameParts::from_path(path);
    Ok(Track {
        path: path.to_path_buf(),
        title: tags.title.unwrap_or(named.title),
        artist: tags.artist.or(tags.album_artist).or(named.artist),
        album: tags.album,
        genre: tags.genre,
        duration,
        format,
    })
}

/// The names of the codecs people meet that the droid does not decode, for the skip reason.
fn codec_name(codec: AudioCodecId) -> String {
    use symphonia::core::codecs::audio::well_known as codecs;
    match codec {
        codecs::CODEC_ID_OPUS => "Opus".to_owned(),
        codecs::CODEC_ID_ALAC => "ALAC (Apple Lossless)".to_owned(),
        codecs::CODEC_ID_AC3 | codecs::CODEC_ID_EAC3 => "Dolby Digital (AC-3)".to_owned(),
        codecs::CODEC_ID_WMA => "WMA".to_owned(),
        codecs::CODEC_ID_WAVPACK => "WavPack".to_owned(),
        codecs::CODEC_ID_SPEEX => "Speex".to_owned(),
        other => format!("a codec it does not know (id {other})"),
    }
}

/// A symphonia error as a reason a person understands.
fn describe(err: &SymphoniaError) -> String {
    match err {
        SymphoniaError::IoError(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            "it ends too early: it is truncated, or not really audio".to_owned()
        }
        SymphoniaError::IoError(err) => format!("cannot read it: {err}"),
        SymphoniaError::DecodeError(what) => format!("it is corrupt ({what})"),
        SymphoniaError::Unsupported(what) => {
            format!("it is not audio the droid can play ({what})")
        }
        SymphoniaError::LimitError(what) => format!("it is too large to read ({what})"),
        other => format!("cannot read it: {other}"),
    }
}

/// The track's duration from its headers: the track's own duration in its time base, else its
/// frame count at its sample rate, else the container's duration.
fn duration_of(
    track: &symphonia::core::formats::Track,
    sample_rate: Option<u32>,
    reader: &dyn FormatReader,
) -> Option<Duration> {
    let in_time_base = |time_base: Option<TimeBase>, duration| {
        time_base
            .zip(duration)
            .and_then(|(base, duration): (TimeBase, _)| base.calc_duration(duration))
            .and_then(to_std)
    };
    let from_frames = || {
        let frames = track.num_frames?;
        let rate = sample_rate.filter(|&rate| rate > 0)?;
        Some(Duration::from_secs_f64(frames as f64 / f64::from(rate)))
    };
    let media = reader.media_info();
    [
        in_time_base(track.time_base, track.duration),
        from_frames(),
        in_time_base(media.time_base, media.duration),
    ]
    .into_iter()
    .flatten()
    .find(|duration| !duration.is_zero())
}

/// A symphonia time as a std duration (`None` if negative).
fn to_std(time: Time) -> Option<Duration> {
    let (seconds, nanos) = time.parts();
    u64::try_from(seconds)
        .ok()
        .map(|seconds| Duration::new(seconds, nanos))
}

/// The container's short name, as [`Track::format`] documents.
fn format_name(reader: &dyn FormatReader) -> &'static str {
    match reader.format_info().format {
        well_known::FORMAT_ID_MP3 => "mp3",
        well_known::FORMAT_ID_MP2 => "mp2",
        well_known::FORMAT_ID_MP1 => "mp1",
        well_known::FORMAT_ID_FLAC => "flac",
        well_known::FORMAT_ID_OGG => "ogg",
        well_known::FORMAT_ID_WAVE => "wav",
        well_known::FORMAT_ID_ISOMP4 => "m4a",
        well_known::FORMAT_ID_ADTS => "aac",
        well_known::FORMAT_ID_MKV => "mkv",
        _ => reader.format_info().short_name,
    }
}

/// The tags the library uses.
#[derive(Default)]
struct Tags {
    title: Option<String>,
    artist: Option<String>,
    album_artist: Option<String>,
    album: Option<String>,
    genre: Option<String>,
}

/// Reads the tags of a WAV file's RIFF `LIST`/`INFO` chunk (before or after the audio). `None` if
/// the file is not RIFF or has no such chunk.
fn riff_info(path: &Path) -> Option<Tags> {
    use std::io::{Seek, SeekFrom};

    let mut file = BufReader::new(File::open(path).ok()?);
    let mut header = [0; 12];
    file.read_exact(&mut header).ok()?;
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return None;
    }
    let mut chunk = [0; 8];
    while file.read_exact(&mut chunk).is_ok() {
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        // Chunks are padded to an even length.
        let padded = u64::from(size) + u64::from(size % 2);
        if &chunk[0..4] != b"LIST" {
            file.seek(SeekFrom::Current(i64::try_from(padded).ok()?))
                .ok()?;
            continue;
        }
        // Tags are a few hundred bytes; a huge LIST is something else.
        let mut list = vec![0; usize::try_from(size).ok()?.min(1 << 20)];
        file.read_exact(&mut list).ok()?;
        if !list.starts_with(b"INFO") {
            file.seek(SeekFrom::Current(
                i64::try_from(padded).ok()? - list.len() as i64,
            ))
            .ok()?;
            continue;
        }
        let mut tags = Tags::default();
        let mut rest = &list[4..];
        while rest.len() >= 8 {
            let id = &rest[0..4];
            let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let value = rest.get(8..8 + len)?;
            let field = match id {
                b"INAM" => &mut tags.title,
                b"IART" => &mut tags.artist,
                b"IPRD" => &mut tags.album,
                b"IGNR" => &mut tags.genre,
                _ => &mut None,
            };
            set_tag(field, &String::from_utf8_lossy(value));
            rest = rest.get(8 + len + len % 2..).unwrap_or_default();
        }
        return Some(tags);
    }
    None
}

/// Collects the tags from every metadata revision the reader holds.
///
/// The log holds the revisions in the order they were read: trailing tags (ID3v1, APE) first,
/// then leading ones (ID3v2), then the container's own (Vorbis comments, MP4 `ilst`, RIFF
/// `INFO`). Later revisions override earlier ones field by field, so ID3v1's fields, cut at 30
/// characters, lose to ID3v2's.
fn read_tags(reader: &mut dyn FormatReader, track_id: u32) -> Tags {
    let mut tags = Tags::default();
    let mut metadata = reader.metadata();
    // `pop` hands out every revision but the newest, which stays `current`.
    while let Some(revision) = metadata.pop() {
        tags.apply(&revision, track_id);
    }
    if let Some(revision) = metadata.current() {
        tags.apply(revision, track_id);
    }
    tags
}

impl Tags {
    fn apply(&mut self, revision: &MetadataRevision, track_id: u32) {
        let per_track = revision
            .per_track
            .iter()
            .filter(|track| track.track_id == u64::from(track_id))
            .flat_map(|track| &track.metadata.tags);
        for tag in revision.media.tags.iter().chain(per_track) {
            let (field, value) = match &tag.std {
                Some(StandardTag::TrackTitle(value)) => (&mut self.title, value),
                Some(StandardTag::Artist(value)) => (&mut self.artist, value),
                Some(StandardTag::AlbumArtist(value)) => (&mut self.album_artist, value),
                Some(StandardTag::Album(value)) => (&mut self.album, value),
                Some(StandardTag::Genre(value)) => (&mut self.genre, value),
                _ => continue,
            };
            set_tag(field, value);
        }
    }

    fn is_empty(&self) -> bool {
        [
            &self.title,
            &self.artist,
            &self.album_artist,
            &self.album,
            &self.genre,
        ]
        .iter()
        .all(|field| field.is_none())
    }
}

/// Sets a tag, unless the value is empty: some taggers pad with NULs or spaces, and an empty tag
/// is no tag.
fn set_tag(field: &mut Option<String>, value: &str) {
    let value = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if !value.is_empty() {
        *field = Some(value.to_owned());
    }
}

/// What a file name says about its track.
struct NameParts {
    artist: Option<String>,
    title: String,
}

impl NameParts {
    /// "Artist - Title.ext" splits at the first " - "; anything else is all title. A numeric
    /// "artist" ("03 - Title") is a track number, not an artist.
    fn from_path(path: &Path) -> NameParts {
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().trim().to_owned())
            .unwrap_or_default();
        match stem.split_once(" - ") {
            Some((artist, title)) if !title.trim().is_empty() && !artist.trim().is_empty() => {
                let artist = artist.trim();
                let title = title.trim().to_owned();
                if artist.chars().all(|c| c.is_ascii_digit()) {
                    NameParts {
                        artist: None,
                        title,
                    }
                } else {
                    NameParts {
                        artist: Some(artist.to_owned()),
                        title,
                    }
                }
            }
            _ => NameParts {
                artist: None,
                title: stem,
            },
        }
    }
}

/// Probes many files at once: probing is mostly waiting for the disk (and, on a network share,
/// for the network), so a few threads make a large library scan several times faster. Results
/// are in the order of `paths`.
fn probe_all(paths: &[PathBuf]) -> Vec<Result<Track, String>> {
    const MAX_THREADS: usize = 8;
    let threads = thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_THREADS)
        .min(paths.len());
    if threads <= 1 {
        return paths.iter().map(|path| probe(path)).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Track, String>>> = vec![None; paths.len()];
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = paths.get(i) else { break };
                        done.push((i, probe(path)));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            // `probe` catches panics, so a worker cannot fail.
            for (i, result) in worker.join().expect("probe worker panicked") {
                results[i] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every path is probed once"))
        .collect()
}

/// The files under a folder, and the entries that could not be read.
struct Walk {
    files: Vec<PathBuf>,
    problems: Vec<Skipped>,
}

/// Lists the files under `root`, recursively, in a stable order. Hidden entries (".name") are
/// left out: they are editors' and systems' files, and where [`install`] keeps its half-copied
/// files. Symbolic links are followed (music folders are often links to a disk), but each folder
/// is visited once, so a link loop ends. `exclude` is a canonical folder not to enter.
fn walk(root: &Path, exclude: Option<&Path>) -> io::Result<Walk> {
    let mut walked = Walk {
        files: Vec::new(),
        problems: Vec::new(),
    };
    let mut visited = HashSet::new();
    visited.insert(fs::canonicalize(root)?);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if dir == root => return Err(err),
            Err(err) => {
                walked.problems.push(Skipped {
                    path: dir,
                    reason: format!("cannot read this folder: {err}"),
                });
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) if !entry.file_name().to_string_lossy().starts_with('.') => {
                    paths.push(entry.path());
                }
                Ok(_) => {}
                Err(err) => walked.problems.push(Skipped {
                    path: dir.clone(),
                    reason: format!("cannot list this folder: {err}"),
                }),
            }
        }
        paths.sort();
        let mut subdirs = Vec::new();
        for path in paths {
            // `metadata` follows links; a broken link only matters if it claims to be audio.
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => match fs::canonicalize(&path) {
                    Ok(canonical) => {
                        if Some(canonical.as_path()) != exclude && visited.insert(canonical) {
                            subdirs.push(path);
                        }
                    }
                    Err(err) => walked.problems.push(Skipped {
                        path,
                        reason: format!("cannot read this folder: {err}"),
                    }),
                },
                Ok(meta) if meta.is_file() => walked.files.push(path),
                Ok(_) => {}
                Err(err) if is_audio_file(&path) => walked.problems.push(Skipped {
                    path,
                    reason: format!("cannot read it (a broken link?): {err}"),
                }),
                Err(_) => {}
            }
        }
        // Reversed onto the stack, so folders are visited in name order.
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(walked)
}

/// Why `play music <query>` found nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct NoMatch {
    /// The query as typed (trimmed).
    pub query: String,
    /// The display names of the closest tracks, best first (at most 3), to suggest.
    pub closest: Vec<String>,
    /// How many tracks the library has.
    pub count: usize,
}

impl fmt::Display for NoMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.count;
        let tracks = if count == 1 { "track" } else { "tracks" };
        if count == 0 {
            return write!(
                f,
                "the music library is empty: add music with 'install music <folder>'"
            );
        }
        if let Ok(number) = self.query.parse::<u64>() {
            return write!(
                f,
                "there is no track {number}: the library has {count} {tracks} (1–{count})"
            );
        }
        if self.query.is_empty() {
            return write!(
                f,
                "which track? Give a number (1–{count}) or a name. Try 'list music'"
            );
        }
        write!(f, "no track matches '{}' (of {count} {tracks})", self.query)?;
        if !self.closest.is_empty() {
            let closest: Vec<String> = self
                .closest
                .iter()
                .map(|name| format!("'{name}'"))
                .collect();
            write!(f, "; closest: {}", closest.join(", "))?;
        }
        write!(f, ". Try 'list music'")
    }
}

/// The lowest fuzzy similarity (0–1) that still counts as a match: one typo in a short word
/// passes ("cantna" for "cantina" is 0.86), a different word does not.
const FUZZY_THRESHOLD: f64 = 0.75;

/// Resolves what `play music <query>` names, returning the track's 0-based position in `tracks`.
///
/// In order: a 1-based number ("3"); an exact title, "Artist - Title" or file name (ignoring
/// case and punctuation); the best substring match (title first, then the display name and file
/// name, then artist, album and genre, then all the query's words anywhere); the best fuzzy
/// match (a similarity of at least 0.75, where 1 is identical). Ties go to the earlier track.
/// Nothing good enough is a [`NoMatch`] with the closest tracks, never a guess. A number out of
/// range only matches a track that has that number in its name.
pub fn find(tracks: &[Track], query: &str) -> Result<usize, NoMatch> {
    let query = query.trim();
    let no_match = |closest| NoMatch {
        query: query.to_owned(),
        closest,
        count: tracks.len(),
    };
    if tracks.is_empty() || query.is_empty() {
        return Err(no_match(Vec::new()));
    }
    let number = query.parse::<u64>().ok();
    if let Some(number) = number
        && (1..=tracks.len() as u64).contains(&number)
    {
        return Ok(number as usize - 1);
    }

    let wanted = normalize(query);
    if wanted.is_empty() {
        // Only punctuation: it would be "in" every name.
        return Err(no_match(Vec::new()));
    }
    let names: Vec<Names> = tracks.iter().map(Names::of).collect();
    if let Some(i) = names.iter().position(|names| names.exact(&wanted)) {
        return Ok(i);
    }
    let substring = names
        .iter()
        .enumerate()
        .filter_map(|(i, names)| Some((names.substring_rank(&wanted)?, names.title.len(), i)))
        .min();
    if let Some((_, _, i)) = substring {
        return Ok(i);
    }
    // A number that is not a track's number and not in any name: say so plainly rather than
    // fuzzily matching digits.
    if number.is_some() {
        return Err(no_match(Vec::new()));
    }

    let mut scored: Vec<(f64, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, names)| (names.fuzzy_score(&wanted), i))
        .collect();
    // Best first; equal scores keep the library's order.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    match scored.first() {
        Some(&(score, i)) if score >= FUZZY_THRESHOLD => Ok(i),
        _ => Err(no_match(
            scored
                .iter()
                .take(3)
                .map(|&(_, i)| tracks[i].display_name())
                .collect(),
        )),
    }
}

/// A track's names, normalized for matching.
struct Names {
    title: String,
    display: String,
    stem: String,
    /// Artist, album and genre: what a query may name instead of the track.
    others: Vec<String>,
    /// Everything above, for queries whose words are spread over several fields.
    all: String,
}

impl Names {
    fn of(track: &Track) -> Names {
        let others: Vec<String> = [&track.artist, &track.album, &track.genre]
            .into_iter()
            .flatten()
            .map(|field| normalize(field))
            .collect();
        let title = normalize(&track.title);
        let display = normalize(&track.display_name());
        let stem = normalize(&track.stem());
        let all = [&display, &stem]
            .into_iter()
            .chain(&others)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        Names {
            title,
            display,
            stem,
            others,
            all,
        }
    }

    fn exact(&self, wanted: &str) -> bool {
        self.title == wanted || self.display == wanted || self.stem == wanted
    }

    /// How well `wanted` appears inside the names (lower is better), if at all.
    fn substring_rank(&self, wanted: &str) -> Option<u8> {
        if self.title.starts_with(wanted) {
            Some(0)
        } else if self.title.contains(wanted) {
            Some(1)
        } else if self.display.contains(wanted) || self.stem.contains(wanted) {
            Some(2)
        } else if self.others.iter().any(|other| other.contains(wanted)) {
            Some(3)
        } else if wanted.split(' ').all(|word| self.all.contains(word)) {
            Some(4)
        } else {
            None
        }
    }

    /// The best similarity (0–1) of `wanted` to any name, whole or to a run of as many words.
    fn fuzzy_score(&self, wanted: &str) -> f64 {
        [&self.title, &self.display, &self.stem]
            .into_iter()
            .chain(&self.others)
            .map(|name| similarity(wanted, name))
            .fold(0.0, f64::max)
    }
}

/// How alike `wanted` is to `name` or to the closest run of as many words in it (so "cantna"
/// finds "Cantina Band"); a partial match counts a little less than a whole one.
fn similarity(wanted: &str, name: &str) -> f64 {
    let whole = strsim::normalized_damerau_levenshtein(wanted, name);
    let width = wanted.split(' ').count();
    let words: Vec<&str> = name.split(' ').collect();
    let partial = if words.len() > width {
        words
            .windows(width)
            .map(|run| strsim::normalized_damerau_levenshtein(wanted, &run.join(" ")))
            .fold(0.0, f64::max)
            * 0.95
    } else {
        0.0
    };
    whole.max(partial)
}

/// Lower case, punctuation as spaces, single spaces: "R2-D2's  Theme" → "r2 d2 s theme".
fn normalize(text: &str) -> String {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `install music` did.
#[derive(Clone, Debug, Default)]
pub struct Install {
    /// The new files in the library.
    pub copied: Vec<PathBuf>,
    /// Files not copied, and why: not audio, not playable, already in the library, or a copy
    /// that failed.
    pub skipped: Vec<Skipped>,
}

/// Copies the playable audio files found recursively in `from` (a folder, or a single file) into
/// `library`, keeping their names and the folders they are in. An existing file is never overwritten: an identical one
/// means the file is already installed, a different one makes the copy "Name (2).ext". Files that
/// will not play are not copied, and say why.
///
/// Fails only if `from` cannot be read or `library` cannot be created.
pub fn install(from: &Path, library: &Path) -> io::Result<Install> {
    let single_file = fs::metadata(from)?.is_file();
    fs::create_dir_all(library)?;
    let walked = if single_file {
        Walk {
            files: vec![from.to_path_buf()],
            problems: Vec::new(),
        }
    } else {
        // Never walk into the library itself (when it lies inside `from`): it would copy into
        // itself.
        walk(from, Some(&fs::canonicalize(library)?))?
    };
    let mut installed = Install {
        copied: Vec::new(),
        skipped: walked.problems,
    };
    let (audio, other): (Vec<PathBuf>, Vec<PathBuf>) = walked
        .files
        .into_iter()
        .partition(|path| is_audio_file(path));
    installed
        .skipped
        .extend(other.into_iter().map(|path| Skipped {
            path,
            reason: format!(
                "not an audio file (the library takes {})",
                AUDIO_EXTENSIONS.join(", ")
            ),
        }));
    for (path, probed) in audio.iter().zip(probe_all(&audio)) {
        if let Err(reason) = probed {
            installed.skipped.push(Skipped {
                path: path.clone(),
                reason: format!("not playable: {reason}"),
            });
            continue;
        }
        let relative = match path.strip_prefix(from) {
            Ok(relative) if !relative.as_os_str().is_empty() => relative,
            // A single file: into the library's top folder.
            _ => Path::new(path.file_name().unwrap_or_default()),
        };
        match copy_new(path, &library.join(relative)) {
            Ok(Copied::New(to)) => installed.copied.push(to),
            Ok(Copied::AlreadyThere(at)) => installed.skipped.push(Skipped {
                path: path.clone(),
                reason: format!("already in the library as {}", at.display()),
            }),
            Err(err) => installed.skipped.push(Skipped {
                path: path.clone(),
                reason: format!("cannot copy it into the library: {err}"),
            }),
        }
    }
    Ok(installed)
}

/// What [`copy_new`] did.
enum Copied {
    /// Copied to this new file.
    New(PathBuf),
    /// An identical file is already here.
    AlreadyThere(PathBuf),
}

/// Copies `from` to `to`, or to "to (2)", "to (3)"… if `to` holds something else.
///
/// The copy is written under a hidden name first and then linked into place, so a scan running
/// meanwhile never sees half a file, and linking (unlike renaming) fails rather than replaces if
/// another copy took the name in between.
fn copy_new(from: &Path, to: &Path) -> io::Result<Copied> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut n = 1;
    loop {
        let candidate = numbered(to, n);
        n += 1;
        if candidate.exists() {
            if same_contents(from, &candidate)? {
                return Ok(Copied::AlreadyThere(candidate));
            }
            continue;
        }
        let placed = crate::atomic_file::create_new_with(&candidate, |file| {
            io::copy(&mut fs::File::open(from)?, file).map(drop)
        })?;
        if placed {
            return Ok(Copied::New(candidate));
        }
    }
}

/// "Name.ext" for `n` = 1, "Name (n).ext" after.
fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem} ({n}).{}", ext.to_string_lossy()),
        None => format!("{stem} ({n})"),
    };
    path.with_file_name(name)
}

/// Whether two files hold the same bytes.
fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    if fs::metadata(a)?.len() != fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut a, mut b) = (
        BufReader::new(File::open(a)?),
        BufReader::new(File::open(b)?),
    );
    let (mut chunk_a, mut chunk_b) = (vec![0; 64 * 1024], vec![0; 64 * 1024]);
    loop {
        let read = a.read(&mut chunk_a)?;
        if read == 0 {
            return Ok(true);
        }
        b.read_exact(&mut chunk_b[..read])?;
        if chunk_a[..read] != chunk_b[..read] {
            return Ok(false);
        }
    }
}

/// hound's errors as `io::Error`, keeping the I/O ones as they are.
#[cfg(any(feature = "demo-library", feature = "testkit"))]
pub(crate) fn hound_error(err: hound::Error) -> io::Error {
    match err {
        hound::Error::IoError(err) => err,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::fixtures::{self, Format, Tags as FileTags};

    /// Makes a test file, failing (never skipping) with the fixture's message, which says how to
    /// install ffmpeg when it is missing.
    fn make(dir: &Path, name: &str, format: Format, seconds: f32, tags: &FileTags) -> PathBuf {
        fixtures::make(dir, name, format, 440.0, seconds, tags)
            .unwrap_or_else(|err| panic!("cannot make the test file {name}: {err}"))
    }

    fn seconds(track: &Track) -> f64 {
        track.duration.expect("a duration").as_secs_f64()
    }

    fn track(artist: Option<&str>, title: &str) -> Track {
        Track {
            path: PathBuf::from(format!("/music/{title}.mp3")),
            title: title.to_owned(),
            artist: artist.map(str::to_owned),
            album: None,
            genre: None,
            duration: None,
            format: "mp3",
        }
    }

    #[test]
    fn scan_reads_tags_and_durations_of_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for (i, format) in Format::ALL.into_iter().enumerate() {
            let ext = format.extension();
            let length = 1.0 + i as f32 * 0.5;
            let tags = FileTags::new("Tagged Artist", &format!("Tagged {ext}"))
                .album("Tagged Album")
                .genre("Jazz");
            // Tagged files in nested folders, whose file names say something else.
            make(
                dir.path(),
                &format!("tagged/{ext}/deep/file {ext}"),
                format,
                length,
                &tags,
            );
            make(
                dir.path(),
                &format!("Named Artist - Named {ext}"),
                format,
                length,
                &FileTags::none(),
            );
        }

        let scan = scan(dir.path()).unwrap();
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        assert_eq!(scan.tracks.len(), 2 * Format::ALL.len());
        for (i, format) in Format::ALL.into_iter().enumerate() {
            let ext = format.extension();
            let expected = 1.0 + i as f64 * 0.5;
            // Lossless files are exact; lossy ones may carry the encoder's priming (AAC in MP4
            // keeps its 1024 frames, 23 ms; the decoder plays them too).
            let tolerance = if format.is_lossless() { 0.001 } else { 0.1 };
            let tagged = scan
                .tracks
                .iter()
                .find(|t| t.title == format!("Tagged {ext}"))
                .unwrap_or_else(|| panic!("no tagged {ext} in {:#?}", scan.tracks));
            assert_eq!(tagged.artist.as_deref(), Some("Tagged Artist"), "{ext}");
            assert_eq!(tagged.album.as_deref(), Some("Tagged Album"), "{ext}");
            assert_eq!(tagged.genre.as_deref(), Some("Jazz"), "{ext}");
            assert_eq!(tagged.format, ext, "{ext}");
            assert!(
                (seconds(tagged) - expected).abs() <= tolerance,
                "{ext}: {:?}, expected {expected} s",
                tagged.duration
            );
            let named = scan
                .tracks
                .iter()
                .find(|t| t.title == format!("Named {ext}"))
                .unwrap_or_else(|| panic!("no untagged {ext} in {:#?}", scan.tracks));
            assert_eq!(named.artist.as_deref(), Some("Named Artist"), "{ext}");
            assert_eq!(named.album, None, "{ext}");
            assert!((seconds(named) - expected).abs() <= tolerance, "{ext}");
        }
        // Sorted by artist, then title.
        let names: Vec<String> = scan.tracks.iter().map(Track::display_name).collect();
        let mut sorted = names.clone();
        sorted.sort_by_key(|name| name.to_lowercase());
        assert_eq!(names, sorted);
    }

    #[test]
    fn scan_skips_bad_files_with_a_reason_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        make(root, "Good - Song", Format::Mp3, 1.0, &FileTags::none());
        fs::write(
            root.join("Not Really.mp3"),
            "this is a text file\n".repeat(50),
        )
        .unwrap();
        fs::write(root.join("Empty.flac"), "").unwrap();
        let m4a = make(root, "Cut Short", Format::M4a, 1.0, &FileTags::none());
        let bytes = fs::read(&m4a).unwrap();
        fs::write(&m4a, &bytes[..bytes.len() / 3]).unwrap();
        // Not audio: neither a track nor a problem.
        fs::write(root.join("cover.jpg"), "jpeg").unwrap();
        fs::write(root.join("notes.txt"), "notes").unwrap();
        // Hidden: left alone, even when playable.
        make(root, ".Hidden - Song", Format::Wav, 0.5, &FileTags::none());
        make(
            root,
            ".cache/Cached - Song",
            Format::Wav,
            0.5,
            &FileTags::none(),
        );

        let scan = scan(root).unwrap();
        let titles: Vec<&str> = scan.tracks.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, ["Song"]);
        assert_eq!(scan.tracks[0].artist.as_deref(), Some("Good"));
        let skipped: Vec<(String, &str)> = scan
            .skipped
            .iter()
            .map(|s| {
                let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, s.reason.as_str())
            })
            .collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(skipped[0].0, "Cut Short.m4a");
        assert!(skipped[0].1.contains("moov"), "{skipped:?}");
        assert_eq!(skipped[1], ("Empty.flac".to_owned(), "the file is empty"));
        assert_eq!(skipped[2].0, "Not Really.mp3");
        assert!(skipped[2].1.contains("not audio"), "{skipped:?}");
        // The Display form a log line uses names the file and the problem.
        let line = scan.skipped[1].to_string();
        assert!(line.ends_with("Empty.flac: the file is empty"), "{line}");
    }

    #[cfg(unix)]
    #[test]
    fn scan_follows_links_but_not_round_loops() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("library");
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(library.join("a")).unwrap();
        fixtures::sine_wav(&library.join("a/Loop - One.wav"), 440.0, 0.2, 8_000, 1).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fixtures::sine_wav(&elsewhere.join("Linked - Two.wav"), 440.0, 0.2, 8_000, 1).unwrap();
        // A loop back to the top, and a link to a folder outside.
        std::os::unix::fs::symlink(&library, library.join("a/loop")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, library.join("linked")).unwrap();
        std::os::unix::fs::symlink(library.join("gone.wav"), library.join("Broken.wav")).unwrap();

        let scan = scan(&library).unwrap();
        let titles: Vec<&str> = scan.tracks.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, ["Two", "One"]);
        assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
        assert!(scan.skipped[0].reason.contains("broken link"));
    }

    #[test]
    fn scanning_a_missing_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        let err = scan(&dir.path().join("nowhere")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn an_mp3_without_a_xing_header_has_an_estimated_duration() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("source.wav");
        fixtures::sine_wav(&wav, 440.0, 7.0, 44_100, 2).unwrap();
        let mp3 = dir.path().join("Old Encoder - Constant.mp3");
        fixtures::encode_with(
            &wav,
            &mp3,
            Format::Mp3,
            &FileTags::none(),
            &["-write_xing", "0"],
        )
        .unwrap_or_else(|err| panic!("{err}"));
        let track = probe(&mp3).unwrap();
        // Estimated from the frame size: right for constant bit rate, give or take the
        // encoder's delay and padding, which only the missing header records.
        assert!((seconds(&track) - 7.0).abs() < 0.1, "{:?}", track.duration);
    }

    #[test]
    fn names_come_from_the_file_name_when_there_are_no_tags() {
        let cases = [
            (
                "Figrin D'an - Cantina Band.mp3",
                Some("Figrin D'an"),
                "Cantina Band",
            ),
            ("A - B - C.flac", Some("A"), "B - C"),
            ("Just a Title.ogg", None, "Just a Title"),
            ("03 - Track Three.mp3", None, "Track Three"),
            ("Dash-Without-Spaces.wav", None, "Dash-Without-Spaces"),
            (" - Leading.wav", None, "- Leading"),
        ];
        for (file, artist, title) in cases {
            let parts = NameParts::from_path(Path::new(file));
            assert_eq!(parts.artist.as_deref(), artist, "{file}");
            assert_eq!(parts.title, title, "{file}");
        }
    }

    #[test]
    fn audio_files_are_known_by_extension_in_any_case() {
        for name in [
            "a.mp3", "b.FLAC", "c.ogg", "d.oga", "e.Wav", "f.m4a", "g.aac", "h.mp4",
        ] {
            assert!(is_audio_file(Path::new(name)), "{name}");
        }
        for name in ["a.txt", "b.jpg", "mp3", "c.mp3.part", "d"] {
            assert!(!is_audio_file(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn tracks_display_and_serialize_for_people() {
        let mut with_artist = track(Some("Figrin D'an"), "Cantina Band");
        with_artist.duration = Some(Duration::from_millis(2_500));
        assert_eq!(with_artist.display_name(), "Figrin D'an - Cantina Band");
        assert_eq!(track(None, "Lonely").display_name(), "Lonely");
        let json = serde_json::to_value(&with_artist).unwrap();
        assert_eq!(json["duration"], 2.5);
        assert_eq!(json["artist"], "Figrin D'an");
        assert_eq!(json["format"], "mp3");
    }

    fn library() -> Vec<Track> {
        let mut cantina = track(Some("Figrin D'an and the Modal Nodes"), "Cantina Band");
        cantina.album = Some("Star Wars".to_owned());
        vec![
            cantina,
            track(Some("Figrin D'an and the Modal Nodes"), "Mad About Me"),
            track(Some("John Williams"), "Binary Sunset"),
            track(Some("Cantina Demo"), "Droid Shuffle"),
            track(Some("Prince"), "1999"),
            track(None, "Title Only"),
        ]
    }

    #[test]
    fn find_takes_a_1_based_number() {
        let tracks = library();
        assert_eq!(find(&tracks, "1"), Ok(0));
        assert_eq!(find(&tracks, " 6 "), Ok(5));
        let err = find(&tracks, "40").unwrap_err();
        assert_eq!(
            err.to_string(),
            "there is no track 40: the library has 6 tracks (1–6)"
        );
        assert!(find(&tracks, "0").is_err());
        // A number that is a title rather than a position.
        assert_eq!(find(&tracks, "1999"), Ok(4));
    }

    #[test]
    fn find_takes_an_exact_name_in_any_case() {
        let tracks = library();
        assert_eq!(find(&tracks, "Binary Sunset"), Ok(2));
        assert_eq!(find(&tracks, "bInArY sUnSeT"), Ok(2));
        assert_eq!(find(&tracks, "John Williams - Binary Sunset"), Ok(2));
        assert_eq!(find(&tracks, "title only"), Ok(5));
    }

    #[test]
    fn find_takes_a_part_of_a_name_preferring_titles() {
        let tracks = library();
        assert_eq!(find(&tracks, "sunset"), Ok(2));
        assert_eq!(find(&tracks, "mad"), Ok(1));
        // In a title (Cantina Band) beats in an artist (Cantina Demo).
        assert_eq!(find(&tracks, "cantina"), Ok(0));
        assert_eq!(find(&tracks, "williams"), Ok(2));
        assert_eq!(find(&tracks, "star wars"), Ok(0));
        // Words in any order, across fields.
        assert_eq!(find(&tracks, "shuffle demo"), Ok(3));
    }

    #[test]
    fn find_forgives_typos() {
        let tracks = library();
        assert_eq!(find(&tracks, "cantna band"), Ok(0));
        assert_eq!(find(&tracks, "bianry sunset"), Ok(2));
        assert_eq!(find(&tracks, "droid shufle"), Ok(3));
    }

    #[test]
    fn find_says_no_match_and_suggests_the_closest() {
        let tracks = library();
        let err = find(&tracks, "xyzzy").unwrap_err();
        assert_eq!(err.query, "xyzzy");
        assert_eq!(err.count, 6);
        assert_eq!(err.closest.len(), 3);
        let message = err.to_string();
        assert!(message.starts_with("no track matches 'xyzzy' (of 6 tracks); closest: '"));
        assert!(message.ends_with("'. Try 'list music'"), "{message}");

        let err = find(&tracks, "binary moonrise").unwrap_err();
        assert_eq!(err.closest[0], "John Williams - Binary Sunset", "{err}");

        let err = find(&tracks, "?!").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no track matches '?!' (of 6 tracks). Try 'list music'"
        );
        assert!(
            find(&tracks, "  ")
                .unwrap_err()
                .to_string()
                .contains("which track?")
        );

        let err = find(&[], "anything").unwrap_err();
        assert_eq!(err.count, 0);
        assert!(err.to_string().contains("install music"), "{err}");
    }

    #[test]
    fn install_copies_new_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (stick, library) = (dir.path().join("stick"), dir.path().join("library"));
        make(&stick, "Artist - One", Format::Mp3, 0.5, &FileTags::none());
        make(
            &stick,
            "album/Artist - Two",
            Format::Flac,
            0.5,
            &FileTags::none(),
        );
        fs::write(stick.join("broken.ogg"), "not audio at all").unwrap();
        fs::write(stick.join("readme.txt"), "hello").unwrap();
        fs::write(stick.join(".hidden.mp3"), "hidden").unwrap();
        // Already in the library under the same name, but a different recording.
        make(
            &library,
            "Artist - One",
            Format::Mp3,
            0.7,
            &FileTags::none(),
        );

        let first = install(&stick, &library).unwrap();
        let copied: Vec<PathBuf> = first
            .copied
            .iter()
            .map(|p| p.strip_prefix(&library).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            copied,
            [
                PathBuf::from("Artist - One (2).mp3"),
                PathBuf::from("album/Artist - Two.flac")
            ]
        );
        assert_eq!(
            fs::read(&first.copied[0]).unwrap(),
            fs::read(stick.join("Artist - One.mp3")).unwrap()
        );
        let reasons: Vec<(String, &str)> = first
            .skipped
            .iter()
            .map(|s| {
                (
                    s.path.file_name().unwrap().to_string_lossy().into_owned(),
                    s.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|(name, why)| name == "readme.txt" && why.starts_with("not an audio file"))
        );
        assert!(
            reasons
                .iter()
                .any(|(name, why)| name == "broken.ogg" && why.starts_with("not playable"))
        );
        // No partial copies left behind.
        let leftovers: Vec<_> = fs::read_dir(&library)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Again: everything is already there.
        let again = install(&stick, &library).unwrap();
        assert!(again.copied.is_empty(), "{:?}", again.copied);
        assert_eq!(
            again
                .skipped
                .iter()
                .filter(|s| s.reason.starts_with("already in the library"))
                .count(),
            2
        );
        let scan = scan(&library).unwrap();
        assert_eq!(scan.tracks.len(), 3);
    }

    #[test]
    fn install_into_a_library_inside_the_source_does_not_copy_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("music");
        fixtures::sine_wav(&dir.path().join("New - Tune.wav"), 330.0, 0.2, 8_000, 1).unwrap();
        fs::create_dir_all(&library).unwrap();
        fixtures::sine_wav(&library.join("Old - Tune.wav"), 440.0, 0.2, 8_000, 1).unwrap();
        let installed = install(dir.path(), &library).unwrap();
        assert_eq!(installed.copied, [library.join("New - Tune.wav")]);
        assert!(installed.skipped.is_empty(), "{:?}", installed.skipped);
    }

    #[test]
    fn install_takes_a_single_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let song = dir.path().join("downloads/Solo - Song.wav");
        fs::create_dir_all(song.parent().unwrap()).unwrap();
        fixtures::sine_wav(&song, 440.0, 0.2, 8_000, 1).unwrap();
        let library = dir.path().join("library");
        let installed = install(&song, &library).unwrap();
        assert_eq!(installed.copied, [library.join("Solo - Song.wav")]);
    }

    #[test]
    fn install_from_a_missing_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("library");
        assert!(install(&dir.path().join("nowhere"), &library).is_err());
        assert!(!library.exists(), "a failed install creates nothing");
    }
}
