//! The music library: a folder of audio files, what is in them, and what `play music <query>`
//! means.
//!
//! [`scan`] walks the folder (recursively; hidden files and folders skipped; symbolic links
//! followed, but never round a loop) and [`probe`]s every file with an audio extension: its tags
//! and its duration come from the container's headers through symphonia, without decoding the
//! file. A file that cannot be played is listed in [`Scan::skipped`] with the reason; one bad file
//! never spoils a scan. [`find`] turns a query into a track ([`NoMatch`] when nothing fits,
//! where the original played the first track instead). [`install`] copies files in,
//! [`ensure_demo_library`] writes a few synthesized tunes so a fresh droid has something to play.
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
        let partial = hidden_partial(&candidate);
        let placed = fs::copy(from, &partial).and_then(|_| {
            match fs::hard_link(&partial, &candidate) {
                Ok(()) => Ok(true),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                // Some file systems (FAT on a memory stick) have no hard links.
                Err(_) => fs::rename(&partial, &candidate).map(|()| true),
            }
        });
        // Gone already after a rename; after a link or a failure, not wanted.
        let _ = fs::remove_file(&partial);
        if placed? {
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

/// A hidden name beside `path` for a file being written (hidden, so scans skip it), unique to
/// this process and call, so two writers never share one.
fn hidden_partial(path: &Path) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.part", std::process::id()))
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

/// Makes sure the demo tracks are in `dir`, writing those that are missing, and returns their
/// paths. The droid then has music on a fresh machine without shipping any recording: a few short
/// tunes synthesized here, the same bytes every time (`Cantina Demo - <Title>.wav`, 44.1 kHz
/// stereo, 16-bit).
pub fn ensure_demo_library(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = demo::SONGS
        .iter()
        .map(|song| dir.join(format!("{DEMO_ARTIST} - {}.wav", song.title)))
        .collect();
    // Rendering is pure CPU work (about a second a tune in an unoptimized build), so each missing
    // tune gets a thread of its own.
    let results: Vec<io::Result<()>> = thread::scope(|scope| {
        let writers: Vec<_> = demo::SONGS
            .iter()
            .zip(&paths)
            .filter(|(_, path)| !path.exists())
            .map(|(song, path)| scope.spawn(move || write_demo(song, path)))
            .collect();
        writers
            .into_iter()
            .map(|writer| writer.join().expect("a demo track writer panicked"))
            .collect()
    });
    results.into_iter().collect::<io::Result<()>>()?;
    Ok(paths)
}

/// Writes one demo track under a hidden name and renames it into place, so an interrupted run
/// leaves no half track that the next run would take as done.
fn write_demo(song: &demo::Song, path: &Path) -> io::Result<()> {
    let partial = hidden_partial(path);
    let written = demo::write(song, &partial).and_then(|()| fs::rename(&partial, path));
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    written?;
    tracing::info!(path = %path.display(), "wrote a demo track");
    Ok(())
}

/// hound's errors as `io::Error`, keeping the I/O ones as they are.
pub(crate) fn hound_error(err: hound::Error) -> io::Error {
    match err {
        hound::Error::IoError(err) => err,
        other => io::Error::other(other),
    }
}

/// A small, fast, seeded random number generator (SplitMix64). Generated audio must be the same
/// bytes on every machine and with every version of every crate, which `rand`'s generators do
/// not promise.
#[derive(Clone, Debug)]
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new(seed: u64) -> Noise {
        Noise(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in -1.0..1.0.
    pub(crate) fn next_f32(&mut self) -> f32 {
        // The top 24 bits: exactly representable in an f32.
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The demo tunes: a tiny sequencer and synthesizer.
mod demo {
    use std::{f64::consts::TAU, io, path::Path};

    use super::{Noise, hound_error};

    const SAMPLE_RATE: u32 = 44_100;
    const RATE: f64 = SAMPLE_RATE as f64;

    /// Semitones of the major scale's degrees.
    const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
    /// Natural minor.
    const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];
    /// Mixolydian: major with a flat seventh, the blues' scale here.
    const MIXOLYDIAN: [i32; 7] = [0, 2, 4, 5, 7, 9, 10];

    /// One tune.
    pub(super) struct Song {
        pub(super) title: &'static str,
        /// Seeds the melody and the drums' noise.
        seed: u64,
        bpm: f64,
        beats_per_bar: usize,
        /// The MIDI note of the key's root (60 is middle C).
        root: i32,
        scale: [i32; 7],
        /// The chord of each bar, as a scale degree (0-based), repeated.
        progression: &'static [i32],
        bars: usize,
        /// How late the off-beat eighths fall, as a fraction of an eighth (0 is straight).
        swing: f64,
        lead: Wave,
    }

    /// Four tunes in different keys, meters and tempi, 25–35 s each.
    pub(super) const SONGS: [Song; 4] = [
        Song {
            title: "Droid Shuffle",
            seed: 1,
            bpm: 120.0,
            beats_per_bar: 4,
            root: 60,
            scale: MAJOR,
            progression: &[0, 5, 3, 4],
            bars: 16,
            swing: 0.33,
            lead: Wave::Triangle,
        },
        Song {
            title: "Twin Moons Waltz",
            seed: 2,
            bpm: 132.0,
            beats_per_bar: 3,
            root: 57,
            scale: MINOR,
            progression: &[0, 3, 6, 2, 0, 3, 4, 4],
            bars: 20,
            swing: 0.0,
            lead: Wave::Sine,
        },
        Song {
            title: "Hyperspace Hop",
            seed: 3,
            bpm: 144.0,
            beats_per_bar: 4,
            root: 62,
            scale: MAJOR,
            progression: &[0, 4, 5, 3],
            bars: 20,
            swing: 0.0,
            lead: Wave::Square,
        },
        Song {
            title: "Moisture Farm Blues",
            seed: 4,
            bpm: 96.0,
            beats_per_bar: 4,
            root: 52,
            scale: MIXOLYDIAN,
            progression: &[0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4],
            bars: 12,
            swing: 0.33,
            lead: Wave::Triangle,
        },
    ];

    #[derive(Clone, Copy)]
    enum Wave {
        Sine,
        Triangle,
        /// A soft square: the first odd harmonics only, so it does not buzz.
        Square,
    }

    impl Wave {
        fn at(self, phase: f64) -> f64 {
            match self {
                Wave::Sine => phase.sin(),
                Wave::Triangle => {
                    let x = (phase / TAU).fract();
                    4.0 * (x - 0.5).abs() - 1.0
                }
                Wave::Square => {
                    phase.sin() + (3.0 * phase).sin() / 3.0 + (5.0 * phase).sin() / 5.0 * 0.7
                }
            }
        }
    }

    /// Interleaved stereo samples being mixed.
    struct Mix {
        samples: Vec<f32>,
    }

    /// A note to add to the mix.
    struct Note {
        start: f64,
        length: f64,
        hz: f64,
        wave: Wave,
        gain: f64,
        /// -1 left … 1 right.
        pan: f64,
        attack: f64,
        /// Seconds for the level to fall by about 63 %.
        decay: f64,
        /// Depth of a 5 Hz vibrato, as a fraction of the pitch.
        vibrato: f64,
    }

    impl Mix {
        fn new(seconds: f64) -> Mix {
            Mix {
                samples: vec![0.0; 2 * (seconds * RATE) as usize],
            }
        }

        fn frames(&self) -> usize {
            self.samples.len() / 2
        }

        /// The frames from `start` lasting `length` seconds (plus a short release), clipped to
        /// the mix.
        fn span(&self, start: f64, length: f64) -> std::ops::Range<usize> {
            let first = ((start * RATE) as usize).min(self.frames());
            let last = (((start + length) * RATE) as usize).min(self.frames());
            first..last
        }

        fn add_note(&mut self, note: &Note) {
            const RELEASE: f64 = 0.03;
            let (left, right) = pan_gains(note.pan);
            let span = self.span(note.start, note.length + RELEASE);
            // Seconds into the note at its first frame (a fraction of a frame at most).
            let offset = span.start as f64 / RATE - note.start;
            // The envelope and the oscillator advance by steps: an `exp` and a `sin` fewer per
            // sample, which matters in the unoptimized builds the tests run.
            let rise = 1.0 / (note.attack * RATE);
            let fall = (-1.0 / (note.decay * RATE)).exp();
            let step = TAU * note.hz / RATE;
            let (mut attack, mut decay, mut phase) = (0.0f64, 1.0, 0.0);
            // The release ramp only matters in the note's last frames.
            let release_from = ((note.length - offset) * RATE) as usize;
            let samples = &mut self.samples;
            let mut i = 0;
            while i < span.len() {
                attack = (attack + rise).min(1.0);
                decay *= fall;
                let mut level = note.gain * attack * decay;
                if i >= release_from {
                    let t = offset + i as f64 / RATE;
                    level *= ((note.length + RELEASE - t) / RELEASE).clamp(0.0, 1.0);
                }
                phase += if note.vibrato > 0.0 {
                    let t = offset + i as f64 / RATE;
                    step * (1.0 + note.vibrato * (TAU * 5.0 * t).sin())
                } else {
                    step
                };
                if phase > TAU {
                    phase -= TAU;
                }
                let value = (level * note.wave.at(phase)) as f32;
                let at = 2 * (span.start + i);
                samples[at] += value * left;
                samples[at + 1] += value * right;
                i += 1;
            }
        }

        /// A kick drum: a sine falling from 110 to 45 Hz.
        fn add_kick(&mut self, start: f64, gain: f64) {
            let span = self.span(start, 0.25);
            let (pitch_fall, level_fall) =
                ((-1.0 / (0.03 * RATE)).exp(), (-1.0 / (0.08 * RATE)).exp());
            let (mut sweep, mut level, mut phase) = (65.0, gain, 0.0f64);
            for frame in span {
                phase += TAU * (45.0 + sweep) / RATE;
                sweep *= pitch_fall;
                level *= level_fall;
                let value = (level * phase.sin()) as f32;
                self.samples[2 * frame] += value;
                self.samples[2 * frame + 1] += value;
            }
        }

        /// A noise burst: a hi-hat tick (short, bright) or a snare (longer, with a tone).
        fn add_noise(&mut self, noise: &mut Noise, start: f64, decay: f64, gain: f64, pan: f64) {
            let (left, right) = pan_gains(pan);
            let span = self.span(start, decay * 5.0);
            let fall = (-1.0 / (decay * RATE)).exp();
            let snare = decay > 0.05;
            let (mut level, mut previous, mut phase) = (gain, 0.0, 0.0f64);
            for frame in span {
                level *= fall;
                let white = f64::from(noise.next_f32());
                // The difference of successive samples: a crude high-pass, for a brighter tick.
                let bright = white - previous;
                previous = white;
                let body = if snare {
                    phase += TAU * 190.0 / RATE;
                    0.5 * phase.sin()
                } else {
                    0.0
                };
                let value = (level * (0.5 * bright + body)) as f32;
                self.samples[2 * frame] += value * left;
                self.samples[2 * frame + 1] += value * right;
            }
        }
    }

    /// Equal-power panning.
    fn pan_gains(pan: f64) -> (f32, f32) {
        let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f64::consts::FRAC_PI_4;
        (angle.cos() as f32, angle.sin() as f32)
    }

    fn hz(midi: i32) -> f64 {
        440.0 * 2f64.powf(f64::from(midi - 69) / 12.0)
    }

    impl Song {
        /// The MIDI note of a scale degree (any integer; 7 is the octave above 0).
        fn note(&self, degree: i32) -> i32 {
            self.root + 12 * degree.div_euclid(7) + self.scale[degree.rem_euclid(7) as usize]
        }

        fn beat(&self) -> f64 {
            60.0 / self.bpm
        }

        fn seconds(&self) -> f64 {
            (self.bars * self.beats_per_bar) as f64 * self.beat() + 1.0
        }

        /// When eighth number `eighth` of bar `bar` sounds, with swing.
        fn eighth_at(&self, bar: usize, eighth: usize) -> f64 {
            let beat = self.beat();
            let on_beat = (bar * self.beats_per_bar) as f64 * beat + (eighth / 2) as f64 * beat;
            if eighth.is_multiple_of(2) {
                on_beat
            } else {
                on_beat + beat / 2.0 * (1.0 + self.swing)
            }
        }

        fn render(&self) -> Vec<f32> {
            let mut mix = Mix::new(self.seconds());
            let mut noise = Noise::new(self.seed);
            let beat = self.beat();
            let bar_length = self.beats_per_bar as f64 * beat;
            let melody = self.melody(&mut noise);
            for (bar, tune) in melody.iter().enumerate() {
                let chord = self.progression[bar % self.progression.len()];
                let bar_start = bar as f64 * bar_length;
                // Pad: the chord's three notes, held for the bar, soft and wide.
                for (i, step) in [0, 2, 4].into_iter().enumerate() {
                    mix.add_note(&Note {
                        start: bar_start,
                        length: bar_length,
                        hz: hz(self.note(chord + step)),
                        wave: Wave::Triangle,
                        gain: 0.06,
                        pan: [-0.6, 0.0, 0.6][i],
                        attack: 0.15,
                        decay: 4.0,
                        vibrato: 0.0,
                    });
                }
                // Bass: root, then fifth, two octaves down, on the strong beats.
                for beat_in_bar in (0..self.beats_per_bar).step_by(2) {
                    let step = if beat_in_bar == 0 { 0 } else { 4 };
                    mix.add_note(&Note {
                        start: bar_start + beat_in_bar as f64 * beat,
                        length: beat * 0.9,
                        hz: hz(self.note(chord + step) - 24),
                        wave: Wave::Sine,
                        gain: 0.22,
                        pan: 0.0,
                        attack: 0.01,
                        decay: 0.6,
                        vibrato: 0.0,
                    });
                }
                self.drums(&mut mix, &mut noise, bar);
                // Lead: the bar's melody, eighth by eighth; a held note lasts until the next.
                let eighths = 2 * self.beats_per_bar;
                for eighth in 0..eighths {
                    let Some(degree) = tune[eighth] else {
                        continue;
                    };
                    let held = tune[eighth + 1..]
                        .iter()
                        .take_while(|n| n.is_none())
                        .count()
                        + 1;
                    let start = self.eighth_at(bar, eighth);
                    mix.add_note(&Note {
                        start,
                        length: held as f64 * beat / 2.0 * 0.9,
                        hz: hz(self.note(degree) + 12),
                        wave: self.lead,
                        gain: 0.3,
                        pan: 0.25,
                        attack: 0.012,
                        decay: 0.5,
                        vibrato: 0.004,
                    });
                }
            }
            master(&mut mix.samples);
            mix.samples
        }

        /// Kick on the first beat (and the third in 4/4), snare on the back beats, ticks on
        /// the eighths. The last bar is an ending: one kick, nothing after.
        fn drums(&self, mix: &mut Mix, noise: &mut Noise, bar: usize) {
            let last = bar + 1 == self.bars;
            let beat_length = self.beat();
            let bar_start = (bar * self.beats_per_bar) as f64 * beat_length;
            mix.add_kick(bar_start, 0.3);
            if last {
                return;
            }
            for beat in 1..self.beats_per_bar {
                let at = bar_start + beat as f64 * beat_length;
                if self.beats_per_bar == 4 && beat == 2 {
                    mix.add_kick(at, 0.25);
                }
                if self.beats_per_bar == 4 && beat % 2 == 1 {
                    mix.add_noise(noise, at, 0.09, 0.15, -0.1);
                }
            }
            for eighth in 0..2 * self.beats_per_bar {
                let accent = if eighth % 2 == 0 { 0.10 } else { 0.06 };
                mix.add_noise(noise, self.eighth_at(bar, eighth), 0.018, accent, 0.4);
            }
        }

        /// The lead's scale degrees per bar and eighth (`None`: hold the previous note or rest).
        /// Two-bar phrases: a motif made of chord tones on the beats and steps between them,
        /// repeated over the next chords, with a new motif every eight bars and a long final
        /// note.
        fn melody(&self, noise: &mut Noise) -> Vec<Vec<Option<i32>>> {
            let eighths = 2 * self.beats_per_bar;
            let mut bars = Vec::with_capacity(self.bars);
            let mut motif = Vec::new();
            for bar in 0..self.bars {
                if bar % 8 == 0 {
                    motif = self.motif(noise, 2 * eighths);
                }
                let chord = self.progression[bar % self.progression.len()];
                let half = (bar % 2) * eighths;
                let mut notes: Vec<Option<i32>> = motif[half..half + eighths]
                    .iter()
                    .map(|step| step.map(|step| chord + step))
                    .collect();
                if bar + 1 == self.bars {
                    // End on the root, held.
                    notes = vec![None; eighths];
                    notes[0] = Some(7);
                }
                bars.push(notes);
            }
            bars
        }

        /// Steps above the chord's root, per eighth, for two bars.
        fn motif(&self, noise: &mut Noise, length: usize) -> Vec<Option<i32>> {
            const CHORD_TONES: [i32; 4] = [0, 2, 4, 7];
            let mut steps = Vec::with_capacity(length);
            let mut current = CHORD_TONES[noise.below(4)];
            for eighth in 0..length {
                let on_beat = eighth % 2 == 0;
                // Rests and held notes give the phrase room to breathe; never at its start.
                if eighth > 0 && noise.below(10) < if on_beat { 2 } else { 4 } {
                    steps.push(None);
                    continue;
                }
                current = if on_beat {
                    // The chord tone nearest a small leap from here.
                    let target = current + noise.below(5) as i32 - 2;
                    *CHORD_TONES
                        .iter()
                        .min_by_key(|tone| (*tone - target).abs())
                        .expect("chord tones")
                } else {
                    (current + if noise.below(2) == 0 { 1 } else { -1 }).clamp(-2, 9)
                };
                steps.push(Some(current));
            }
            steps
        }
    }

    /// Fades in and out, rounds off the drum hits' peaks (which would otherwise set the level
    /// and leave the tune quiet), then scales to a peak of 0.8 so every tune is about as loud.
    fn master(samples: &mut [f32]) {
        const DRIVE: f32 = 1.5;
        let frames = samples.len() / 2;
        let fade_in = (0.02 * RATE) as usize;
        let fade_out = (1.5 * RATE) as usize;
        for (frame, pair) in samples.chunks_mut(2).enumerate() {
            let from_end = frames - frame;
            let gain = (frame as f32 / fade_in as f32)
                .min(from_end as f32 / fade_out as f32)
                .min(1.0);
            pair[0] *= gain;
            pair[1] *= gain;
        }
        let peak = samples.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
        if peak > 0.0 {
            // tanh: linear for quiet samples, gently flattening toward the peak.
            let scale = 0.8 / (DRIVE).tanh();
            samples
                .iter_mut()
                .for_each(|s| *s = (*s / peak * DRIVE).tanh() * scale);
        }
    }

    /// Renders `song` into a 16-bit stereo WAV file.
    pub(super) fn write(song: &Song, path: &Path) -> io::Result<()> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).map_err(hound_error)?;
        {
            // The fast path writes whole frames without per-sample checks.
            let samples = song.render();
            let mut block = writer.get_i16_writer(samples.len() as u32);
            for sample in samples {
                block.write_sample((sample * f32::from(i16::MAX)).round() as i16);
            }
            block.flush().map_err(hound_error)?;
        }
        writer.finalize().map_err(hound_error)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

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

    #[test]
    fn the_demo_library_is_written_once_deterministically_and_plays() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("music");
        let paths = ensure_demo_library(&library).unwrap();
        assert_eq!(paths.len(), demo::SONGS.len());
        let written: Vec<SystemTime> = paths
            .iter()
            .map(|p| fs::metadata(p).unwrap().modified().unwrap())
            .collect();
        // A second call writes nothing.
        assert_eq!(ensure_demo_library(&library).unwrap(), paths);
        for (path, modified) in paths.iter().zip(&written) {
            assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), *modified);
        }
        // The same bytes every time. (One tune suffices: they all come from the same code, and
        // each takes a second to render in a debug build.)
        let again = dir.path().join("again.wav");
        write_demo(&demo::SONGS[1], &again).unwrap();
        assert_eq!(fs::read(&again).unwrap(), fs::read(&paths[1]).unwrap());

        let scan = scan(&library).unwrap();
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        assert_eq!(scan.tracks.len(), demo::SONGS.len());
        for track in &scan.tracks {
            assert_eq!(track.artist.as_deref(), Some(DEMO_ARTIST));
            assert_eq!(track.format, "wav");
            let length = seconds(track);
            assert!(
                (20.0..=40.0).contains(&length),
                "{}: {length} s",
                track.title
            );
            // 44.1 kHz stereo 16-bit, loud enough to hear and never clipped. (Read as raw bytes
            // after the 44-byte header hound writes: hound's sample iterator is slow in debug
            // builds.)
            let spec = hound::WavReader::open(&track.path).unwrap().spec();
            assert_eq!(
                (spec.channels, spec.sample_rate, spec.bits_per_sample),
                (2, 44_100, 16)
            );
            let bytes = fs::read(&track.path).unwrap();
            let peak = bytes[44..]
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]).unsigned_abs())
                .max()
                .unwrap();
            assert!(
                (20_000..32_767).contains(&peak),
                "{}: peak {peak}",
                track.title
            );
        }
        // Every title is different, so `play music <title>` finds each.
        for (i, track) in scan.tracks.iter().enumerate() {
            assert_eq!(find(&scan.tracks, &track.title), Ok(i));
        }
    }
}
