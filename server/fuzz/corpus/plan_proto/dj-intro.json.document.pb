"Š{
  "name": "dj-intro",
  "layer": "LAYER_FOREGROUND",
  "steps": [
    {"id": "attention", "eyePattern": {"pattern": "engaged"}},
    {"id": "duck", "musicDuck": {"level": 0.2, "fadeMs": 800}},
    {"id": "intro", "speak": {"text": "Patrons of the cantina, your attention please! Straight from the Outer Rim, here is our next tune."}},
    {"id": "drop", "musicCrossfade": {"track": "2", "seconds": 2}},
    {"id": "unduck", "musicUnduck": {"fadeMs": 1500}},
    {"id": "flash", "at": "1.5s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "surprised", "brightness": 1}},
    {"id": "groove", "at": "3s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "happy"}},
    {"id": "settle", "at": "12s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "idle"}}
  ]
}
