#!/usr/bin/env node
// The compiled command (npm run build, which npm install runs through `prepare`).
import '../dist/cli.js';
