// An Express app: one page, on the port Hakobune gives in $PORT.
const express = require("express");
const os = require("os");

const app = express();
const port = Number(process.env.PORT || 8080);

app.get("/", (req, res) => {
  res.type("html").send(
    "<!doctype html><meta charset=utf-8><title>Hello from Express</title>" +
      "<h1>Hello from Express on Hakobune!</h1>" +
      `<p>Node.js ${process.version} in a container called <code>${os.hostname()}</code>, listening on port ${port}.</p>`
  );
});

app.listen(port, "0.0.0.0", () => {
  console.log(`listening on 0.0.0.0:${port}`);
});
