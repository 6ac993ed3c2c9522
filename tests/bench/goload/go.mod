module pitaya-actors/bench/goload

go 1.23
