from mcs.app import app

app()
