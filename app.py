from kapjournal import create_app

app = create_app()
