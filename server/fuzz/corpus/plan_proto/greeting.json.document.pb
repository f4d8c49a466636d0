"¢{
  "plan": {
    "name": "greeting",
    "layer": "LAYER_FOREGROUND",
    "steps": [
      {"id": "smile", "eyePattern": {"pattern": "happy", "brightness": 1.0}},
      {"id": "welcome", "speak": {"text": "Welcome to Oga's Cantina! Find a seat, the band is about to play.", "duckLevel": 0.3}},
      {"id": "linger", "delay": {"duration": "1.5s"}},
      {"id": "rest", "eyePattern": {"pattern": "idle"}}
    ]
  }
}
