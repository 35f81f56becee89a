"""The Kairos console: a web page over the api's gRPC, for the people who schedule posts and the
people who watch them go out.

It is its own deployable and never opens the database: every page is rendered from gRPC calls
made with the signed-in user's API key, so it sees exactly what that key's tenant sees. The key
is entered once and kept, encrypted, in an HttpOnly cookie; the page never holds it.

Pages are rendered on the server (aiohttp and Jinja2, autoescaped); one small script of our own
(`static/console.js`) adds what needs a browser: dragging posts on the calendar, the composer's
live character counts and the dashboard's live updates. No build step, no inline script or style:
the Content-Security-Policy allows only this origin's files.
"""
