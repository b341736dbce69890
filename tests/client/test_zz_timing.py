import time, json
from saliency_client import cli

def test_t(api_url, tiny_weights, images, tmp_path, capsys):
    t=time.time()
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"class-{c}\n" for c in "abcdefghij"))
    cli.main(["--url", api_url, "models", "register", "--name", "tiny-t", "--architecture", "resnet18", "--num-classes", "10", "--input-size", "32", "--resize", "32", "--weights", str(tiny_weights), "--class-names", str(names)])
    t1=time.time()
    cli.main(["--url", api_url, "submit", str(images(1)[0]), "--model", "tiny-t", "--wait", "--no-progress"])
    t2=time.time()
    p = tmp_path/"x.safetensors"; p.write_bytes(b"12345678{}")
    code = cli.main(["--url", api_url, "models", "register", "--name", "Bad Name", "--architecture", "resnet18", "--num-classes", "10", "--weights", str(p)])
    t3=time.time()
    out, err = capsys.readouterr()
    print(t1-t, t2-t1, t3-t2, code, err)
