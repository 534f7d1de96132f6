"""The baseline of bench/load.py: a bare Flask "hello", served by the same gunicorn command."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"
